//! Frame parsing: any UTF-8 text is parsed or refused without panicking, the size check comes
//! first, and a frame that parses serialises back to JSON that parses to the same frame.
#![no_main]

use carebridge::protocol::{ClientFrame, ClientId, FrameError, parse_client_frame};
use libfuzzer_sys::fuzz_target;

/// The embedded default of `limits.max_frame_bytes`.
const MAX_FRAME_BYTES: usize = 16 * 1024;

fuzz_target!(|data: &[u8]| {
    let Ok(raw) = std::str::from_utf8(data) else {
        return;
    };
    match parse_client_frame(raw, MAX_FRAME_BYTES) {
        Ok(frame) => {
            if let ClientFrame::Message { client_id, .. } = &frame {
                assert!(ClientId::parse(client_id.as_str()).is_ok(), "{frame:?}");
            }
            let json = serde_json::to_string(&frame).expect("a parsed frame serialises");
            assert_eq!(
                parse_client_frame(&json, usize::MAX).as_ref(),
                Ok(&frame),
                "{json}"
            );
        }
        Err(error) => {
            // The wire code and the message are what the client sees: neither may panic.
            let _ = (error.code(), error.to_string());
            if raw.len() > MAX_FRAME_BYTES {
                assert!(matches!(error, FrameError::FrameTooLarge { .. }));
            }
        }
    }
    // One byte under the frame's length is always a size error, whatever the frame holds.
    if !raw.is_empty() {
        let limit = raw.len() - 1;
        assert_eq!(
            parse_client_frame(raw, limit),
            Err(FrameError::FrameTooLarge {
                length: raw.len(),
                limit
            })
        );
    }
});
