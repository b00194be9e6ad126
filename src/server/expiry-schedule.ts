/** What the schedule needs of an item: when it expires and where it sits in the heap. */
export interface Expiring {
  readonly expiresAt: number | undefined
  /** Maintained by the schedule; -1 when not scheduled. */
  expiryIndex: number
}

/** Node clamps longer timers to 1 ms; re-arming covers expiries further away than this. */
const MAX_TIMER_MS = 2 ** 31 - 1

/**
 * One timer for every connection's token expiry instead of one timer each: a binary min-heap on
 * expiresAt, with each item's heap index stored on the item so a closed connection leaves in
 * O(log n). The timer is always armed for the earliest expiry.
 */
export class ExpirySchedule<T extends Expiring> {
  private readonly heap: T[] = []
  private timer: NodeJS.Timeout | null = null
  private armedFor = Infinity

  constructor (private readonly onExpire: (item: T) => void, private readonly now: () => number = Date.now) {}

  get size (): number {
    return this.heap.length
  }

  add (item: T): void {
    if (item.expiresAt === undefined || item.expiryIndex !== -1) return
    item.expiryIndex = this.heap.length
    this.heap.push(item)
    this.siftUp(item.expiryIndex)
    this.arm()
  }

  remove (item: T): void {
    const index = item.expiryIndex
    if (index === -1) return
    item.expiryIndex = -1
    const last = this.heap.pop()!
    if (index < this.heap.length) {
      this.heap[index] = last
      last.expiryIndex = index
      this.siftDown(index)
      this.siftUp(last.expiryIndex)
    }
    // The timer may stay armed for an earlier time: firing early only re-arms.
  }

  clear (): void {
    for (const item of this.heap) item.expiryIndex = -1
    this.heap.length = 0
    this.disarm()
  }

  private fire (): void {
    this.timer = null
    this.armedFor = Infinity
    const now = this.now()
    while (this.heap.length > 0 && this.heap[0]!.expiresAt! <= now) {
      const item = this.heap[0]!
      this.remove(item)
      this.onExpire(item)
    }
    this.arm()
  }

  private arm (): void {
    const next = this.heap[0]?.expiresAt
    if (next === undefined) {
      this.disarm()
      return
    }
    if (next >= this.armedFor && this.timer !== null) return
    this.disarm()
    this.armedFor = next
    this.timer = setTimeout(() => { this.fire() }, Math.min(Math.max(0, next - this.now()), MAX_TIMER_MS))
    // Expiries alone never keep the process alive.
    this.timer.unref()
  }

  private disarm (): void {
    if (this.timer !== null) clearTimeout(this.timer)
    this.timer = null
    this.armedFor = Infinity
  }

  private siftUp (index: number): void {
    const heap = this.heap
    const item = heap[index]!
    while (index > 0) {
      const parentIndex = (index - 1) >> 1
      const parent = heap[parentIndex]!
      if (parent.expiresAt! <= item.expiresAt!) break
      heap[index] = parent
      parent.expiryIndex = index
      index = parentIndex
    }
    heap[index] = item
    item.expiryIndex = index
  }

  private siftDown (index: number): void {
    const heap = this.heap
    const length = heap.length
    const item = heap[index]!
    for (;;) {
      const left = 2 * index + 1
      if (left >= length) break
      const right = left + 1
      const child = right < length && heap[right]!.expiresAt! < heap[left]!.expiresAt! ? right : left
      if (heap[child]!.expiresAt! >= item.expiresAt!) break
      heap[index] = heap[child]!
      heap[index]!.expiryIndex = index
      index = child
    }
    heap[index] = item
    item.expiryIndex = index
  }
}
