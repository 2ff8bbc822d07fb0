import assert from 'node:assert/strict'
import { test } from 'node:test'
import { runCli, writeConfig } from '../helpers/cli.ts'

const secret = 'Hunter2-Secret-Value'
const base = `mode: backup
backup_id: daily
source:
  bootstrap_servers: [127.0.0.1:1]
storage:
  backend: filesystem
  path: /tmp/kafka-backup-never-written
`

/** Malformed configs as operators write them: each must fail before any connection is made. */
const cases: Array<{ name: string; yaml: string; code: string; names: RegExp }> = [
  {
    name: 'bad YAML',
    yaml: 'mode: backup\nsource: { bootstrap_servers: [a:1 }\n',
    code: 'KB_CONFIG_PARSE',
    names: /config\.yaml:\d+:\d+/
  },
  { name: 'not a mapping', yaml: '- just\n- a list\n', code: 'KB_CONFIG_INVALID', names: /mapping|object/ },
  { name: 'missing mode', yaml: base.replace('mode: backup\n', ''), code: 'KB_CONFIG_INVALID', names: /mode/ },
  {
    name: 'unknown mode',
    yaml: base.replace('mode: backup', 'mode: archive'),
    code: 'KB_CONFIG_INVALID',
    names: /mode/
  },
  {
    name: 'missing backup_id',
    yaml: base.replace('backup_id: daily\n', ''),
    code: 'KB_CONFIG_INVALID',
    names: /backup_id/
  },
  {
    name: 'backup_id escaping the folder',
    yaml: base.replace('daily', '../etc'),
    code: 'KB_CONFIG_INVALID',
    names: /backup_id/
  },
  { name: 'missing source', yaml: base.replace(/source:\n.*\n/, ''), code: 'KB_CONFIG_INVALID', names: /source/ },
  {
    name: 'missing bootstrap_servers',
    yaml: base.replace('  bootstrap_servers: [127.0.0.1:1]\n', '  client_id: x\n'),
    code: 'KB_CONFIG_INVALID',
    names: /bootstrap_servers/
  },
  {
    name: 'bootstrap server without port',
    yaml: base.replace('127.0.0.1:1', 'localhost'),
    code: 'KB_CONFIG_INVALID',
    names: /bootstrap_servers/
  },
  {
    name: 'missing storage',
    yaml: base.replace(/storage:\n.*\n.*\n/, ''),
    code: 'KB_CONFIG_INVALID',
    names: /storage/
  },
  {
    name: 'missing storage.path',
    yaml: base.replace('  path: /tmp/kafka-backup-never-written\n', ''),
    code: 'KB_CONFIG_INVALID',
    names: /storage\.path/
  },
  {
    name: 'unknown backend',
    yaml: base.replace('filesystem', 'tape'),
    code: 'KB_CONFIG_INVALID',
    names: /storage\.backend/
  },
  { name: 'unknown top-level key', yaml: `${base}retention: 7d\n`, code: 'KB_CONFIG_INVALID', names: /retention/ },
  {
    name: 'misspelt nested key',
    yaml: `${base}backup:\n  compresion: zstd\n`,
    code: 'KB_CONFIG_INVALID',
    names: /compression/
  },
  {
    name: 'unknown codec',
    yaml: `${base}backup:\n  compression: brotli\n`,
    code: 'KB_CONFIG_INVALID',
    names: /backup\.compression/
  },
  {
    name: 'zstd level out of range',
    yaml: `${base}backup:\n  compression_level: 42\n`,
    code: 'KB_CONFIG_INVALID',
    names: /compression_level/
  },
  {
    name: 'negative size',
    yaml: `${base}backup:\n  segment_max_bytes: -1\n`,
    code: 'KB_CONFIG_INVALID',
    names: /segment_max_bytes/
  },
  {
    name: 'wrong type',
    yaml: `${base}backup:\n  continuous: sometimes\n`,
    code: 'KB_CONFIG_INVALID',
    names: /backup\.continuous/
  },
  {
    name: 'restore section in a backup config',
    yaml: `${base}restore:\n  dry_run: true\n`,
    code: 'KB_CONFIG_INVALID',
    names: /restore/
  },
  {
    name: 'unset environment variable',
    // biome-ignore lint/suspicious/noTemplateCurlyInString: the config's own ${VAR} syntax, not a JS template
    yaml: base.replace('[127.0.0.1:1]', '${NO_SUCH_VARIABLE_FOR_TEST}'),
    code: 'KB_CONFIG_ENV',
    names: /NO_SUCH_VARIABLE_FOR_TEST/
  },
  {
    name: 'invalid secret value is not echoed',
    yaml: base.replace(
      '  bootstrap_servers: [127.0.0.1:1]\n',
      `  bootstrap_servers: [127.0.0.1:1]\n  security:\n    security_protocol: PLAINTEXT\n    sasl_password: ${secret}\n`
    ),
    code: 'KB_CONFIG_INVALID',
    names: /sasl_password/
  },
  {
    name: 's3 part size below 5 MiB',
    yaml: `mode: backup\nbackup_id: d\nsource: { bootstrap_servers: a:1 }\nstorage: { backend: s3, bucket: my-bucket, multipart_part_size: 1024 }\n`,
    code: 'KB_CONFIG_INVALID',
    names: /multipart_part_size/
  }
]

test('each malformed config fails with its code, one line naming the key, exit 2, no stack, no secret', async () => {
  assert.ok(cases.length >= 20)
  const failures: string[] = []
  for (const c of cases) {
    const result = await runCli(['backup', '--config', writeConfig(c.yaml)])
    const lines = result.stderr.trim().split('\n')
    const problems = [
      result.code !== 2 && `exit code ${result.code}`,
      lines.length !== 1 && `${lines.length} lines`,
      !new RegExp(`^kafka-backup: ${c.code}: `).test(lines[0] ?? '') && `not ${c.code}`,
      !c.names.test(lines[0] ?? '') && `does not name ${c.names}`,
      /\n\s+at /.test(result.stderr) && 'stack trace',
      (result.stderr.includes(secret) || result.stdout.includes(secret)) && 'secret echoed'
    ].filter(Boolean)
    if (problems.length > 0) {
      failures.push(`${c.name}: ${problems.join(', ')}: ${result.stderr.trim()}`)
    }
  }
  assert.deepEqual(failures, [])
})
