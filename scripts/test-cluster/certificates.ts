/**
 * Test certificates made with the openssl command line at test time: a CA, a broker
 * certificate for `localhost` only (so that connecting by 127.0.0.1 fails host name
 * verification), a client certificate for mutual TLS, and a second CA nobody trusts.
 */
import { spawnSync } from 'node:child_process'
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'

export interface Certificates {
  dir: string
  /** The CA that signed the broker and client certificates (PEM). */
  caFile: string
  /** A CA that signed neither. */
  otherCaFile: string
  /** The broker's PKCS#8 key followed by its certificate: a Kafka PEM keystore. */
  brokerKeystoreFile: string
  clientCertificateFile: string
  clientKeyFile: string
}

function openssl(dir: string, args: string[]): void {
  const result = spawnSync('openssl', args, { cwd: dir, encoding: 'utf8' })
  if (result.status !== 0) {
    throw new Error(`openssl ${args.join(' ')} failed (exit ${result.status ?? result.signal}): ${result.stderr}`)
  }
}

function selfSignedCa(dir: string, name: string): void {
  openssl(dir, [
    'req',
    '-x509',
    '-newkey',
    'rsa:2048',
    '-nodes',
    '-keyout',
    `${name}.key`,
    '-out',
    `${name}.pem`,
    '-days',
    '2',
    '-subj',
    `/CN=${name}`
  ])
}

/** A key and a certificate signed by `ca`, with `extensions` (subjectAltName, extendedKeyUsage). */
function signed(dir: string, name: string, subject: string, extensions: string): void {
  openssl(dir, [
    'req',
    '-newkey',
    'rsa:2048',
    '-nodes',
    '-keyout',
    `${name}.key`,
    '-out',
    `${name}.csr`,
    '-subj',
    subject
  ])
  const extensionsFile = `${name}.ext`
  writeFileSync(join(dir, extensionsFile), `${extensions}\n`)
  openssl(dir, [
    'x509',
    '-req',
    '-in',
    `${name}.csr`,
    '-CA',
    'ca.pem',
    '-CAkey',
    'ca.key',
    '-CAcreateserial',
    '-out',
    `${name}.pem`,
    '-days',
    '2',
    '-extfile',
    extensionsFile
  ])
}

export function makeCertificates(dir: string): Certificates {
  mkdirSync(dir, { recursive: true })
  selfSignedCa(dir, 'ca')
  selfSignedCa(dir, 'other-ca')
  signed(dir, 'broker', '/CN=localhost', 'subjectAltName=DNS:localhost')
  signed(dir, 'client', '/CN=backup-client', 'extendedKeyUsage=clientAuth')
  // Kafka's PEM keystore wants the key in PKCS#8 followed by the certificate chain.
  openssl(dir, ['pkcs8', '-topk8', '-nocrypt', '-in', 'broker.key', '-out', 'broker.pk8'])
  writeFileSync(
    join(dir, 'broker-keystore.pem'),
    Buffer.concat([readFileSync(join(dir, 'broker.pk8')), readFileSync(join(dir, 'broker.pem'))])
  )
  return {
    dir,
    caFile: join(dir, 'ca.pem'),
    otherCaFile: join(dir, 'other-ca.pem'),
    brokerKeystoreFile: join(dir, 'broker-keystore.pem'),
    clientCertificateFile: join(dir, 'client.pem'),
    clientKeyFile: join(dir, 'client.key')
  }
}
