import { GiB, MiB } from '../units.ts'

/** S3 refuses multipart parts below 5 MiB (except the last) and above 5 GiB, and more than 10000 parts. */
export const s3MinPartSize = 5 * MiB
export const s3MaxPartSize = 5 * GiB
export const s3MaxParts = 10_000
