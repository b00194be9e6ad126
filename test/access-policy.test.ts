import t from 'tap'
import { AccessPolicy, InvalidClaimError, MAX_PATTERN_STARS } from '../src/auth/access-policy.js'
import { compileGlob, matchGlob } from '../src/auth/glob.js'

const glob = (pattern: string, text: string): boolean => matchGlob(compileGlob(pattern), text)

t.test('glob: `*` matches any run of characters, everything else is literal', async t => {
  t.ok(glob('team-*', 'team-1'))
  t.ok(glob('team-*', 'team-'), 'a star matches the empty run')
  t.notOk(glob('team-*', 'team'))
  t.ok(glob('*', ''))
  t.ok(glob('*', 'anything'))
  t.ok(glob('*-draft-*', 'q3-draft-7'))
  t.notOk(glob('*-draft-*', 'q3-draft'))
  t.ok(glob('a*b*c', 'abc'))
  t.ok(glob('a*b*c', 'aXbYbZc'))
  t.notOk(glob('a*b*c', 'aXcYb'), 'segments in order')
  t.ok(glob('ab*ba', 'aba') === false, 'prefix and suffix may not overlap')
  t.ok(glob('ab*ba', 'abba'))
  t.ok(glob('a.b*', 'a.bc'), 'dots are literal')
  t.notOk(glob('a.b*', 'axbc'), 'not a regex wildcard')
  t.ok(glob('(x)+[y]*', '(x)+[y]z'), 'regex metacharacters are literal')
  t.ok(glob('**a**', 'xxaxx'), 'repeated stars are one star')
  t.ok(glob('exact', 'exact'))
  t.notOk(glob('exact', 'exact!'))
  // Greedy leftmost is correct: a later occurrence of a segment is found when the first fails.
  t.ok(glob('*ab*abc', 'ababc'), 'first "ab" at 0, then "abc" at 2')
  t.ok(glob('*aab', 'aaab'))
})

t.test('glob: the pattern that made the regex backtrack for seconds gets the right answer', async t => {
  const id = 'a'.repeat(128)
  t.notOk(glob('*a*a*a*a*a*b', id), 'no "b": no match')
  t.ok(glob('*a*a*a*a*a*b', `${'a'.repeat(127)}b`), 'with a final "b": a match')
  t.notOk(glob('*a*a*a*a*a*a*a*b', `${'a'.repeat(64)}c${'a'.repeat(63)}`))
})

t.test('AccessPolicy: patterns, exact ids, specificity, and the bound on stars', async t => {
  const policy = AccessPolicy.fromClaim({ 'team-*': 'read-write', 'team-secret': 'none', 'team-ro-*': 'read-only' }, 'read-write')
  t.equal(policy.accessFor('team-1'), 'read-write')
  t.equal(policy.accessFor('team-secret'), 'none')
  t.equal(policy.accessFor('team-ro-1'), 'read-only', 'the more specific pattern wins')
  t.equal(policy.accessFor('other'), 'none')

  const worst = `*${'a*'.repeat(MAX_PATTERN_STARS - 1)}b`
  t.equal(AccessPolicy.fromClaim({ [worst]: 'read-write' }, 'none').accessFor('a'.repeat(128)), 'none', `${MAX_PATTERN_STARS} stars are allowed`)
  let error: unknown
  try { AccessPolicy.fromClaim({ [`*${worst}`]: 'read-write' }, 'none') } catch (err) { error = err }
  t.ok(error instanceof InvalidClaimError, 'one more is an invalid claim')
  t.match((error as Error).message, /at most 8/)
})
