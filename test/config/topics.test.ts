import assert from 'node:assert/strict'
import { describe, test } from 'node:test'
import { compileNameFilter, matchesAny } from '../../src/config/topics.ts'

describe('topic patterns', () => {
  test('* matches any run of characters, including none', () => {
    assert.ok(matchesAny(['orders*'], 'orders'))
    assert.ok(matchesAny(['orders*'], 'orders-eu'))
    assert.ok(matchesAny(['*-eu'], 'payments-eu'))
    assert.ok(matchesAny(['*'], 'anything'))
    assert.ok(!matchesAny(['orders*'], 'old-orders'))
  })

  test('a dot in a pattern is a dot, not a regular-expression wildcard', () => {
    assert.ok(matchesAny(['app.events'], 'app.events'))
    assert.ok(!matchesAny(['app.events'], 'appXevents'))
    assert.ok(!matchesAny(['app.*'], 'appXevents'))
  })

  test('exclude wins over include', () => {
    const selected = compileNameFilter({ include: ['payments-*', 'orders'], exclude: ['*-audit'] })
    assert.deepEqual(['orders', 'payments-eu', 'payments-audit', 'users'].filter(selected), ['orders', 'payments-eu'])
  })
})
