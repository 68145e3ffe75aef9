//! Images a user may feed in that the unit tests of `preprocess` and `data::load` do not cover:
//! CMYK, EXIF-rotated, 1 x 1, extreme aspect ratios, and a JPEG declaring 65535 x 65535 pixels.
//! Each goes through both public readers (`load_rgb`, used by embedding, training and
//! evaluation, and `handid::data::open_image`).

mod common;

use std::io::Cursor;
use std::path::{Path, PathBuf};

use clip_handid::clip::preprocess::{PreprocessError, Transform, decode_rgb, load_rgb};
use clip_handid::handid::data::{DataError, open_image};
use common::TempDir;
use image::{DynamicImage, ImageFormat, Rgb, RgbImage};

fn encode(img: &RgbImage, format: ImageFormat) -> Vec<u8> {
    let mut bytes = Vec::new();
    DynamicImage::ImageRgb8(img.clone()).write_to(&mut Cursor::new(&mut bytes), format).unwrap();
    bytes
}

fn write(dir: &TempDir, name: &str, bytes: &[u8]) -> PathBuf {
    let path = dir.path(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

fn close(got: [u8; 3], want: [u8; 3]) -> bool {
    got.iter().zip(want).all(|(&g, w)| (g as i32 - w as i32).abs() <= 24)
}

/// A JPEG with an EXIF block (APP1, little-endian TIFF, one IFD entry) holding `orientation`.
fn with_exif_orientation(jpeg: &[u8], orientation: u16) -> Vec<u8> {
    let mut tiff = b"II\x2a\x00\x08\x00\x00\x00".to_vec();
    tiff.extend_from_slice(&1u16.to_le_bytes()); // one entry
    tiff.extend_from_slice(&0x0112u16.to_le_bytes()); // Orientation
    tiff.extend_from_slice(&3u16.to_le_bytes()); // SHORT
    tiff.extend_from_slice(&1u32.to_le_bytes());
    tiff.extend_from_slice(&(orientation as u32).to_le_bytes());
    tiff.extend_from_slice(&0u32.to_le_bytes()); // no next IFD
    let mut app1 = b"Exif\x00\x00".to_vec();
    app1.extend_from_slice(&tiff);
    let mut out = jpeg[..2].to_vec(); // SOI
    out.extend_from_slice(&[0xFF, 0xE1]);
    out.extend_from_slice(&((app1.len() + 2) as u16).to_be_bytes());
    out.extend_from_slice(&app1);
    out.extend_from_slice(&jpeg[2..]);
    out
}

#[test]
fn exif_orientation_is_honoured() {
    let dir = TempDir::new("exif");
    // Left half red, right half blue, as stored; the tag says "rotate 90 degrees clockwise".
    let stored = RgbImage::from_fn(32, 16, |x, _| if x < 16 { Rgb([220, 20, 20]) } else { Rgb([20, 20, 220]) });
    let plain = encode(&stored, ImageFormat::Jpeg);
    let path = write(&dir, "rotated.jpg", &with_exif_orientation(&plain, 6));
    let upright = load_rgb(&path).unwrap();
    assert_eq!(upright.dimensions(), (16, 32), "width and height swap");
    // Turned clockwise, the left (red) half is on top.
    assert!(close(upright.get_pixel(8, 4).0, [220, 20, 20]), "{:?}", upright.get_pixel(8, 4));
    assert!(close(upright.get_pixel(8, 28).0, [20, 20, 220]), "{:?}", upright.get_pixel(8, 28));
    let opened = open_image(&path).unwrap();
    assert_eq!((opened.width(), opened.height()), (16, 32));

    // Orientation 1 (or none) leaves the pixels as stored.
    let same = decode_rgb(&with_exif_orientation(&plain, 1), Path::new("upright.jpg")).unwrap();
    assert_eq!(same, decode_rgb(&plain, Path::new("plain.jpg")).unwrap());
}

#[test]
fn cmyk_jpeg_is_converted_to_rgb() {
    // 16 x 8 pixels written by Pillow in CMYK (Adobe APP14, inverted samples as Photoshop
    // writes them): left half cyan, right half yellow. No encoder at hand writes CMYK, hence
    // the committed 361-byte file.
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/images/cmyk.jpg");
    let rgb = load_rgb(&path).unwrap();
    assert_eq!(rgb.dimensions(), (16, 8));
    // Pillow reads (0, 255, 255) and (255, 255, 0).
    assert!(close(rgb.get_pixel(2, 4).0, [0, 255, 255]), "{:?}", rgb.get_pixel(2, 4));
    assert!(close(rgb.get_pixel(13, 4).0, [255, 255, 0]), "{:?}", rgb.get_pixel(13, 4));
    assert_eq!(open_image(&path).unwrap().width(), 16);
}

#[test]
fn one_pixel_and_extreme_aspect_ratios_preprocess() {
    let dir = TempDir::new("tiny-images");
    let one = write(&dir, "one.png", &encode(&RgbImage::from_pixel(1, 1, Rgb([9, 99, 199])), ImageFormat::Png));
    let img = load_rgb(&one).unwrap();
    for transform in [Transform::Clip { size: 224 }, Transform::Reid { height: 256, width: 128 }] {
        let (h, w) = transform.output_size();
        assert_eq!(transform.apply(&img).shape(), [3, h, w]);
    }
    // A 1 x 100,000 strip: the CLIP resize alone would make it 224 x 22,400,000 pixels.
    for (w, h) in [(1, 100_000), (100_000, 1)] {
        let strip = RgbImage::from_fn(w, h, |x, y| Rgb([((x + y) % 251) as u8, 7, 9]));
        let path = write(&dir, "strip.png", &encode(&strip, ImageFormat::Png));
        let img = load_rgb(&path).unwrap();
        assert_eq!(Transform::Clip { size: 224 }.apply(&img).shape(), [3, 224, 224]);
    }
    // Within the aspect limit nothing changes (a 16:1 image is resized as it is).
    let wide = RgbImage::from_fn(64, 4, |x, y| Rgb([(x * 4) as u8, (y * 60) as u8, 0]));
    let a = Transform::Clip { size: 8 }.apply(&wide);
    let manual =
        clip_handid::clip::preprocess::center_crop(&clip_handid::clip::preprocess::resize_bicubic(&wide, 128, 8), 8, 8);
    let b = clip_handid::clip::preprocess::PixelArray::from_rgb(&manual, &Transform::Clip { size: 8 }.normalization());
    assert_eq!(a.data, b.data);
}

#[test]
fn a_jpeg_declaring_a_huge_image_is_refused_before_decoding() {
    let dir = TempDir::new("jpeg-bomb");
    let mut bytes = encode(&RgbImage::from_pixel(8, 8, Rgb([1, 2, 3])), ImageFormat::Jpeg);
    // Rewrite the frame header (SOF0: FF C0, length, precision, height, width) to 65535 x 65535.
    let sof = bytes.windows(2).position(|w| w == [0xFF, 0xC0]).expect("baseline JPEG");
    bytes[sof + 5..sof + 9].copy_from_slice(&[0xFF, 0xFF, 0xFF, 0xFF]);
    let path = write(&dir, "bomb.jpg", &bytes);
    let err = load_rgb(&path).unwrap_err();
    assert!(matches!(err, PreprocessError::TooLarge { .. }), "{err:?}");
    let message = err.to_string();
    assert!(message.contains("bomb.jpg") && message.contains("65535x65535"), "{message}");
    let err = open_image(&path).unwrap_err();
    assert!(matches!(err, DataError::Image { .. }), "{err:?}");
    assert!(err.to_string().contains("bomb.jpg") && err.to_string().contains("too large"), "{err}");
}

#[test]
fn a_tiny_file_declaring_tens_of_millions_of_pixels_is_refused() {
    // Found by fuzzing: an 857-byte JPEG declaring 16396 x 4105 pixels (within MAX_PIXELS) took
    // seconds to "decode" into 200 MB of grey.
    let mut bytes = encode(&RgbImage::from_pixel(8, 8, Rgb([1, 2, 3])), ImageFormat::Jpeg);
    let sof = bytes.windows(2).position(|w| w == [0xFF, 0xC0]).expect("baseline JPEG");
    bytes[sof + 5..sof + 7].copy_from_slice(&4105u16.to_be_bytes());
    bytes[sof + 7..sof + 9].copy_from_slice(&16396u16.to_be_bytes());
    let err = decode_rgb(&bytes, Path::new("sparse.jpg")).unwrap_err();
    assert!(matches!(err, PreprocessError::TooLarge { .. }), "{err:?}");
    let message = err.to_string();
    assert!(message.contains("sparse.jpg") && message.contains("16396x4105") && message.contains("pixels per byte"));
}

#[test]
fn other_formats_under_a_misleading_name_and_garbage_are_named() {
    let dir = TempDir::new("misnamed");
    let img = RgbImage::from_fn(5, 3, |x, y| Rgb([x as u8 * 50, y as u8 * 80, 3]));
    // A BMP called .png and a TIFF called .jpg decode by content.
    for (format, name) in [(ImageFormat::Bmp, "really_bmp.png"), (ImageFormat::Tiff, "really_tiff.jpg")] {
        let path = write(&dir, name, &encode(&img, format));
        assert_eq!(load_rgb(&path).unwrap(), img, "{name}");
    }
    // Text with an image extension, and an HTML error page saved as a photo.
    for (name, bytes) in [("notes.jpg", &b"shopping list"[..]), ("page.png", b"<html><body>404</body></html>")] {
        let path = write(&dir, name, bytes);
        let err = load_rgb(&path).unwrap_err();
        assert!(matches!(err, PreprocessError::NotAnImage { .. }), "{err:?}");
        assert!(err.to_string().contains(name), "{err}");
    }
}
