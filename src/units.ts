/** Byte units, for sizes written the way people read them. */
export const KiB = 1024
export const MiB = 1024 * KiB
export const GiB = 1024 * MiB
