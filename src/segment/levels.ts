/**
 * Compression levels of the segment codecs that take one: the single table both the config
 * schema (which levels a file may name) and the codecs (which level a writer uses) read. It
 * imports nothing, so loading the config does not load the codecs.
 *
 * zstd stops at 19: levels 20-22 ("ultra") need far more memory per compressor for little gain
 * on 1 MiB frames, and negative (fast) levels are left out because lz4 covers that trade-off.
 * lz4 and none take no level.
 */
export const compressionLevels: Readonly<Record<string, { min: number; max: number; default: number } | undefined>> = {
  zstd: { min: 1, max: 19, default: 3 },
  gzip: { min: 1, max: 9, default: 6 }
}
