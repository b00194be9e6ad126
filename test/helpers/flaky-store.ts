import type { AppendEntry, AppendOutcome } from '../../src/persistence/document-store.js'
import { LevelDbStore } from '../../src/persistence/leveldb-store.js'

/** The real LevelDB store, whose appends fail while `failing` is set or wait while `held` is. */
export class FlakyStore extends LevelDbStore {
  failing = false
  attempts = 0
  held: Promise<void> | null = null

  override async append (entries: AppendEntry[]): Promise<AppendOutcome> {
    this.attempts++
    if (this.held !== null) await this.held
    if (this.failing) throw new Error('disk on fire')
    return await super.append(entries)
  }
}
