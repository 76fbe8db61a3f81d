//! A PNG whose header declares 50 000 x 50 000 pixels (7.5 GB of RGB8) over a few bytes of data
//! must be refused from its header: quickly, and without any large allocation. The global
//! allocator of this test binary records the largest single request to prove the latter.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use vlbeit_core::PreprocessConfig;
use vlbeit_core::preprocess::{PreprocessError, Preprocessor};

struct Largest;

static LARGEST: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards to the system allocator, only recording the request size.
unsafe impl GlobalAlloc for Largest {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LARGEST.fetch_max(layout.size(), Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Largest = Largest;

fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

fn chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
    out.extend_from_slice(&(data.len() as u32).to_be_bytes());
    let start = out.len();
    out.extend_from_slice(kind);
    out.extend_from_slice(data);
    let crc = crc32(&out[start..]);
    out.extend_from_slice(&crc.to_be_bytes());
}

fn png_claiming(width: u32, height: u32) -> Vec<u8> {
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut ihdr = Vec::new();
    ihdr.extend_from_slice(&width.to_be_bytes());
    ihdr.extend_from_slice(&height.to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]); // 8-bit RGB, deflate, no interlace
    chunk(&mut png, b"IHDR", &ihdr);
    // A zlib stream of one stored empty block: a few bytes where 7.5 GB are promised.
    chunk(
        &mut png,
        b"IDAT",
        &[
            0x78, 0x01, 0x01, 0x00, 0x00, 0xFF, 0xFF, 0x00, 0x00, 0x00, 0x01,
        ],
    );
    chunk(&mut png, b"IEND", &[]);
    png
}

#[test]
fn a_50000_square_png_header_fails_fast_without_allocating() {
    let pre = Preprocessor::new(PreprocessConfig::default()).unwrap();
    let bomb = png_claiming(50_000, 50_000);
    LARGEST.store(0, Ordering::Relaxed);
    let start = Instant::now();
    let err = pre.encoded(&bomb).unwrap_err();
    let elapsed = start.elapsed();
    let largest = LARGEST.load(Ordering::Relaxed);

    println!("refused in {elapsed:?}, largest allocation {largest} bytes: {err}");
    assert!(matches!(err, PreprocessError::TooLarge { .. }), "{err}");
    let message = err.to_string();
    assert!(
        message.starts_with("encoded image: the header's 50000x50000 = 2500000000 pixels"),
        "{message}"
    );
    assert!(message.contains("max_image_pixels = 89478485"), "{message}");
    assert!(elapsed < Duration::from_millis(500), "took {elapsed:?}");
    assert!(largest < 4 << 20, "largest allocation {largest} bytes");
}

#[test]
fn absurd_header_dimensions_are_refused_too() {
    let pre = Preprocessor::new(PreprocessConfig::default()).unwrap();
    // One side beyond max_image_pixels trips the image crate's per-side limit first.
    let err = pre.encoded(&png_claiming(1, 2_000_000_000)).unwrap_err();
    assert!(matches!(err, PreprocessError::TooLarge { .. }), "{err}");
}
