import assert from 'node:assert/strict'
import { describe, test } from 'node:test'
import { topicMatcher } from '../src/topics.ts'

const matches = (pattern: string, name: string) => topicMatcher({ include: [pattern] })(name)

describe('topic patterns', () => {
  test('* matches any run of characters, including none', () => {
    assert.ok(matches('orders*', 'orders'))
    assert.ok(matches('orders*', 'orders-eu'))
    assert.ok(matches('*-eu', 'payments-eu'))
    assert.ok(matches('*', 'anything'))
    assert.ok(!matches('orders*', 'old-orders'))
  })

  test('a dot in a pattern is a dot, not a regular-expression wildcard', () => {
    assert.ok(matches('app.events', 'app.events'))
    assert.ok(!matches('app.events', 'appXevents'))
    assert.ok(!matches('app.*', 'appXevents'))
  })

  test('exclude wins over include', () => {
    const selected = topicMatcher({ include: ['payments-*', 'orders'], exclude: ['*-audit'] })
    assert.deepEqual(['orders', 'payments-eu', 'payments-audit', 'users'].filter(selected), ['orders', 'payments-eu'])
  })
})
