//! The record-batch compression codecs (gzip, snappy, lz4, zstd), for the one place the broker
//! opens batches up: compaction, which must drop records from compressed batches and write the
//! rest back with the same codec, as Kafka's log cleaner does. The produce and fetch paths never
//! decompress.
//!
//! Decompression is bounded: it never produces more than the caller's `decompressed_bytes_max`,
//! and sizes written in the data (snappy's lengths, zstd's window) are checked against that bound
//! before anything is allocated for them. Bad bytes are an error, never a panic.
//!
//! Formats, as Kafka's clients write them: gzip (one or more members), snappy either raw (as
//! librdkafka writes it) or in xerial's framing (as the Java client writes it, kept on
//! recompression), lz4 frames (Kafka's `KafkaLZ4BlockOutputStream`: independent 64 KiB blocks),
//! and zstd frames.

use std::io::{Read, Write};

use crate::batch::ATTRIBUTE_COMPRESSION_MASK;

/// A batch's compression codec (attributes bits 0-2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Codec {
    None,
    Gzip,
    /// `xerial`: the Java client's framing (magic header, then length-prefixed raw blocks).
    Snappy {
        xerial: bool,
    },
    Lz4,
    Zstd,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecompressError {
    #[error("records decompress to more than {max} bytes")]
    TooLarge { max: usize },
    #[error("compressed records are malformed: {0}")]
    Malformed(String),
    #[error("compression codec {0} is not one Kafka defines")]
    UnknownCodec(i16),
}

/// xerial snappy-java's stream header: magic, then version 1 and compatible version 1.
const XERIAL_MAGIC: &[u8; 8] = b"\x82SNAPPY\x00";
const XERIAL_HEADER_BYTES: usize = 16;
/// Uncompressed bytes per xerial block, as snappy-java writes them.
const XERIAL_BLOCK_BYTES: usize = 32 * 1024;
/// zstd level when recompressing: Kafka's default (`compression.zstd.level`).
const ZSTD_LEVEL: i32 = 3;
/// lz4 level when recompressing: the fast default, which is what matters on a background path.
const LZ4_LEVEL: u32 = 0;

impl Codec {
    /// The codec of a batch with `attributes`, whose compressed records are `body` (snappy's
    /// framing is read from them).
    pub fn of(attributes: i16, body: &[u8]) -> Result<Codec, DecompressError> {
        match attributes & ATTRIBUTE_COMPRESSION_MASK {
            0 => Ok(Codec::None),
            1 => Ok(Codec::Gzip),
            2 => Ok(Codec::Snappy { xerial: body.starts_with(XERIAL_MAGIC) }),
            3 => Ok(Codec::Lz4),
            4 => Ok(Codec::Zstd),
            other => Err(DecompressError::UnknownCodec(other)),
        }
    }

    /// The attributes bits of the codec.
    pub fn attribute(self) -> i16 {
        match self {
            Codec::None => 0,
            Codec::Gzip => 1,
            Codec::Snappy { .. } => 2,
            Codec::Lz4 => 3,
            Codec::Zstd => 4,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Codec::None => "none",
            Codec::Gzip => "gzip",
            Codec::Snappy { .. } => "snappy",
            Codec::Lz4 => "lz4",
            Codec::Zstd => "zstd",
        }
    }
}

fn malformed(e: impl std::fmt::Display) -> DecompressError {
    DecompressError::Malformed(e.to_string())
}

/// Reads all of `reader`, refusing to produce more than `max` bytes.
fn read_bounded(reader: impl Read, max: usize) -> Result<Vec<u8>, DecompressError> {
    let mut out = Vec::new();
    reader.take(max as u64 + 1).read_to_end(&mut out).map_err(malformed)?;
    if out.len() > max {
        return Err(DecompressError::TooLarge { max });
    }
    Ok(out)
}

/// One raw snappy block, its stated length checked against what `max` still allows.
fn snappy_block(block: &[u8], out: &mut Vec<u8>, max: usize) -> Result<(), DecompressError> {
    let length = snap::raw::decompress_len(block).map_err(malformed)?;
    if length > max.saturating_sub(out.len()) {
        return Err(DecompressError::TooLarge { max });
    }
    let start = out.len();
    out.resize(start + length, 0);
    let written = snap::raw::Decoder::new().decompress(block, &mut out[start..]).map_err(malformed)?;
    if written != length {
        return Err(malformed(format!("snappy block says {length} bytes but holds {written}")));
    }
    Ok(())
}

fn snappy_decompress(data: &[u8], xerial: bool, max: usize) -> Result<Vec<u8>, DecompressError> {
    let mut out = Vec::new();
    if !xerial {
        snappy_block(data, &mut out, max)?;
        return Ok(out);
    }
    let mut rest = data.get(XERIAL_HEADER_BYTES..).ok_or_else(|| malformed("xerial snappy header is truncated"))?;
    while !rest.is_empty() {
        let length = rest.get(..4).ok_or_else(|| malformed("xerial snappy block length is truncated"))?;
        let length = u32::from_be_bytes(length.try_into().expect("4 bytes")) as usize;
        let block = rest.get(4..4 + length).ok_or_else(|| malformed(format!("xerial snappy block of {length} bytes overruns the batch")))?;
        snappy_block(block, &mut out, max)?;
        rest = &rest[4 + length..];
    }
    Ok(out)
}

/// Decompresses a batch's records section, producing at most `decompressed_bytes_max` bytes.
pub fn decompress(codec: Codec, data: &[u8], decompressed_bytes_max: usize) -> Result<Vec<u8>, DecompressError> {
    let max = decompressed_bytes_max;
    match codec {
        Codec::None => {
            if data.len() > max {
                return Err(DecompressError::TooLarge { max });
            }
            Ok(data.to_vec())
        }
        Codec::Gzip => read_bounded(flate2::read::MultiGzDecoder::new(data), max),
        Codec::Snappy { xerial } => snappy_decompress(data, xerial, max),
        Codec::Lz4 => {
            let mut decoder = lz4::Decoder::new(data).map_err(malformed)?;
            let out = read_bounded(&mut decoder, max)?;
            // The decoder stops quietly at the end of its input: the frame must be whole, and
            // nothing may follow it.
            let (rest, finished) = decoder.finish();
            finished.map_err(|_| malformed("lz4 frame is truncated"))?;
            if !rest.is_empty() {
                return Err(malformed(format!("{} bytes follow the lz4 frame", rest.len())));
            }
            Ok(out)
        }
        Codec::Zstd => {
            let mut decoder = zstd::stream::read::Decoder::with_buffer(data).map_err(malformed)?;
            // A frame may ask for a window of up to 2 GiB; none needs more than the output bound.
            let window_log_max = (usize::BITS - max.max(1 << 10).leading_zeros()).clamp(10, 31);
            decoder.window_log_max(window_log_max).map_err(malformed)?;
            read_bounded(decoder, max)
        }
    }
}

/// Compresses a batch's records section with `codec`.
pub fn compress(codec: Codec, data: &[u8]) -> std::io::Result<Vec<u8>> {
    match codec {
        Codec::None => Ok(data.to_vec()),
        Codec::Gzip => {
            let mut encoder = flate2::write::GzEncoder::new(Vec::with_capacity(data.len() / 2), flate2::Compression::default());
            encoder.write_all(data)?;
            encoder.finish()
        }
        Codec::Snappy { xerial: false } => snap::raw::Encoder::new().compress_vec(data).map_err(std::io::Error::other),
        Codec::Snappy { xerial: true } => {
            let mut out = Vec::with_capacity(XERIAL_HEADER_BYTES + data.len() / 2);
            out.extend_from_slice(XERIAL_MAGIC);
            out.extend_from_slice(&1i32.to_be_bytes());
            out.extend_from_slice(&1i32.to_be_bytes());
            let mut encoder = snap::raw::Encoder::new();
            for block in data.chunks(XERIAL_BLOCK_BYTES) {
                let compressed = encoder.compress_vec(block).map_err(std::io::Error::other)?;
                out.extend_from_slice(&(compressed.len() as u32).to_be_bytes());
                out.extend_from_slice(&compressed);
            }
            Ok(out)
        }
        Codec::Lz4 => {
            let mut encoder = lz4::EncoderBuilder::new()
                .level(LZ4_LEVEL)
                .block_size(lz4::BlockSize::Max64KB)
                .block_mode(lz4::BlockMode::Independent)
                .block_checksum(lz4::liblz4::BlockChecksum::NoBlockChecksum)
                .checksum(lz4::ContentChecksum::NoChecksum)
                .build(Vec::with_capacity(data.len() / 2))?;
            encoder.write_all(data)?;
            let (out, result) = encoder.finish();
            result.map(|()| out)
        }
        Codec::Zstd => zstd::bulk::compress(data, ZSTD_LEVEL),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: [Codec; 5] = [Codec::Gzip, Codec::Snappy { xerial: false }, Codec::Snappy { xerial: true }, Codec::Lz4, Codec::Zstd];

    fn sample() -> Vec<u8> {
        (0..100_000u32).flat_map(|i| format!("record {} ", i % 977).into_bytes()).collect()
    }

    #[test]
    fn every_codec_round_trips_and_keeps_its_framing() {
        let data = sample();
        for codec in ALL {
            let compressed = compress(codec, &data).unwrap();
            assert!(compressed.len() < data.len() / 2, "{codec:?} compresses");
            assert_eq!(Codec::of(codec.attribute(), &compressed).unwrap(), codec);
            assert_eq!(decompress(codec, &compressed, data.len()).unwrap(), data, "{codec:?}");
        }
    }

    #[test]
    fn the_output_bound_holds_and_bad_bytes_are_errors() {
        let data = sample();
        for codec in ALL {
            let compressed = compress(codec, &data).unwrap();
            assert_eq!(decompress(codec, &compressed, data.len() - 1), Err(DecompressError::TooLarge { max: data.len() - 1 }), "{codec:?}");
            for cut in [0, 1, 7, 17, compressed.len() / 2, compressed.len() - 1] {
                assert!(decompress(codec, &compressed[..cut], data.len()).is_err(), "{codec:?} truncated to {cut}");
            }
            let mut flipped = compressed.clone();
            for i in (20..flipped.len()).step_by(97) {
                flipped[i] ^= 0x5a;
            }
            // Flipped bytes may still decode (snappy has no checksum), but never past the bound.
            if let Ok(out) = decompress(codec, &flipped, data.len()) {
                assert!(out.len() <= data.len());
            }
        }
        // A raw snappy block that claims 4 GiB is refused before anything is allocated.
        let lying = [0xff, 0xff, 0xff, 0xff, 0x0f, 0x00];
        assert!(decompress(Codec::Snappy { xerial: false }, &lying, 1 << 20).is_err());
        assert_eq!(Codec::of(5, &[]), Err(DecompressError::UnknownCodec(5)));
    }

    #[test]
    fn random_bytes_and_mutated_frames_never_panic() {
        // A small deterministic fuzz (fuzz/fuzz_targets/batch_decompress.rs runs the real one).
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let data = sample();
        for codec in ALL {
            let compressed = compress(codec, &data[..4096]).unwrap();
            for _ in 0..300 {
                let mut input = if next() % 2 == 0 { compressed.clone() } else { (0..next() % 300).map(|_| next() as u8).collect() };
                for _ in 0..(next() % 4) {
                    if !input.is_empty() {
                        let at = (next() as usize) % input.len();
                        input[at] = next() as u8;
                    }
                }
                if let Ok(out) = decompress(codec, &input, 8192) {
                    assert!(out.len() <= 8192);
                }
            }
        }
    }
}
