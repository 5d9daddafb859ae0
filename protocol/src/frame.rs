//! Request framing: every Kafka request and response is a 4-byte big-endian length and a body.

/// Bytes in the length prefix of a frame.
pub const FRAME_LENGTH_BYTES: usize = 4;

/// The smallest request that can hold a v1 request header: api key, api version,
/// correlation id and a null client id.
pub const REQUEST_BYTES_MIN: usize = 2 + 2 + 4 + 2;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("frame length {length} is below the {REQUEST_BYTES_MIN}-byte minimum request header")]
    TooSmall { length: i32 },
    #[error("frame length {length} exceeds socket.request.max.bytes={max}")]
    TooLarge { length: i32, max: usize },
}

/// Reads the length prefix of a request frame and checks it against `request_bytes_max`
/// (`socket.request.max.bytes`) before anything is allocated for the body.
pub fn request_length(prefix: [u8; FRAME_LENGTH_BYTES], request_bytes_max: usize) -> Result<usize, FrameError> {
    let length = i32::from_be_bytes(prefix);
    if length < REQUEST_BYTES_MIN as i32 {
        return Err(FrameError::TooSmall { length });
    }
    if length as usize > request_bytes_max {
        return Err(FrameError::TooLarge { length, max: request_bytes_max });
    }
    Ok(length as usize)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_negative_small_and_large() {
        assert!(matches!(request_length((-1i32).to_be_bytes(), 100), Err(FrameError::TooSmall { .. })));
        assert!(matches!(request_length(3i32.to_be_bytes(), 100), Err(FrameError::TooSmall { .. })));
        assert!(matches!(request_length(101i32.to_be_bytes(), 100), Err(FrameError::TooLarge { .. })));
        assert_eq!(request_length(100i32.to_be_bytes(), 100), Ok(100));
    }
}
