//! Training curves as a PNG: the training loss and the validation GAP against the step.

use super::png::encode_png;

/// 3x5 glyphs, one row per `u8` (bits 2..0 left to right).
fn glyph(c: char) -> [u8; 5] {
    match c {
        '0' => [7, 5, 5, 5, 7],
        '1' => [2, 6, 2, 2, 7],
        '2' => [7, 1, 7, 4, 7],
        '3' => [7, 1, 7, 1, 7],
        '4' => [5, 5, 7, 1, 1],
        '5' => [7, 4, 7, 1, 7],
        '6' => [7, 4, 7, 5, 7],
        '7' => [7, 1, 1, 1, 1],
        '8' => [7, 5, 7, 5, 7],
        '9' => [7, 5, 7, 1, 7],
        '.' => [0, 0, 0, 0, 2],
        '-' => [0, 0, 7, 0, 0],
        ':' => [0, 2, 0, 2, 0],
        'a' | 'A' => [7, 5, 7, 5, 5],
        'd' | 'D' => [6, 5, 5, 5, 6],
        'e' | 'E' => [7, 4, 7, 4, 7],
        'g' | 'G' => [7, 4, 5, 5, 7],
        'i' | 'I' => [7, 2, 2, 2, 7],
        'l' | 'L' => [4, 4, 4, 4, 7],
        'n' | 'N' => [6, 5, 5, 5, 5],
        'o' | 'O' => [7, 5, 5, 5, 7],
        'p' | 'P' => [7, 5, 7, 4, 4],
        'r' | 'R' => [7, 5, 6, 5, 5],
        's' | 'S' => [7, 4, 7, 1, 7],
        't' | 'T' => [7, 2, 2, 2, 2],
        'v' | 'V' => [5, 5, 5, 5, 2],
        'x' | 'X' => [5, 5, 2, 5, 5],
        _ => [0; 5],
    }
}

struct Canvas {
    width: usize,
    height: usize,
    rgb: Vec<u8>,
}

impl Canvas {
    fn new(width: usize, height: usize) -> Self {
        Canvas { width, height, rgb: vec![255; width * height * 3] }
    }

    fn set(&mut self, x: i64, y: i64, color: [u8; 3]) {
        if x >= 0 && y >= 0 && (x as usize) < self.width && (y as usize) < self.height {
            let i = (y as usize * self.width + x as usize) * 3;
            self.rgb[i..i + 3].copy_from_slice(&color);
        }
    }

    fn line(&mut self, (x0, y0): (i64, i64), (x1, y1): (i64, i64), color: [u8; 3]) {
        let (dx, dy) = ((x1 - x0).abs(), -(y1 - y0).abs());
        let (sx, sy) = (if x0 < x1 { 1 } else { -1 }, if y0 < y1 { 1 } else { -1 });
        let (mut x, mut y, mut err) = (x0, y0, dx + dy);
        loop {
            self.set(x, y, color);
            if x == x1 && y == y1 {
                break;
            }
            let e2 = 2 * err;
            if e2 >= dy {
                err += dy;
                x += sx;
            }
            if e2 <= dx {
                err += dx;
                y += sy;
            }
        }
    }

    fn text(&mut self, x: i64, y: i64, text: &str, scale: i64, color: [u8; 3]) {
        for (i, c) in text.chars().enumerate() {
            for (row, bits) in glyph(c).iter().enumerate() {
                for col in 0..3 {
                    if bits & (4 >> col) != 0 {
                        for (ox, oy) in (0..scale).flat_map(|a| (0..scale).map(move |b| (a, b))) {
                            self.set(
                                x + (i as i64 * 4 + col) * scale + ox,
                                y + row as i64 * scale + oy,
                                color,
                            );
                        }
                    }
                }
            }
        }
    }
}

fn label(v: f64) -> String {
    if v != 0.0 && (v.abs() < 1e-2 || v.abs() >= 1e5) {
        format!("{v:.1e}")
    } else {
        format!("{v:.3}")
    }
}

const AXIS: [u8; 3] = [60, 60, 60];

/// Draws one series in the rectangle `(x, y, w, h)` with its title and axis labels.
fn panel(
    canvas: &mut Canvas,
    (x, y, w, h): (i64, i64, i64, i64),
    title: &str,
    series: &[(u64, f64)],
    color: [u8; 3],
) {
    canvas.line((x, y), (x, y + h), AXIS);
    canvas.line((x, y + h), (x + w, y + h), AXIS);
    canvas.text(x, y - 16, title, 2, AXIS);
    let points: Vec<(u64, f64)> = series.iter().copied().filter(|(_, v)| v.is_finite()).collect();
    if points.is_empty() {
        return;
    }
    let (s0, s1) = (points[0].0 as f64, points[points.len() - 1].0.max(points[0].0 + 1) as f64);
    let lo = points.iter().map(|p| p.1).fold(f64::INFINITY, f64::min);
    let hi = points.iter().map(|p| p.1).fold(f64::NEG_INFINITY, f64::max);
    let (lo, hi) = if hi > lo { (lo, hi) } else { (lo - 0.5, hi + 0.5) };
    let to_pixel = |(s, v): (u64, f64)| {
        let px = x + ((s as f64 - s0) / (s1 - s0) * w as f64).round() as i64;
        let py = y + h - ((v - lo) / (hi - lo) * h as f64).round() as i64;
        (px, py)
    };
    for pair in points.windows(2) {
        canvas.line(to_pixel(pair[0]), to_pixel(pair[1]), color);
    }
    if points.len() == 1 {
        let (px, py) = to_pixel(points[0]);
        for d in -2..=2 {
            canvas.set(px + d, py, color);
            canvas.set(px, py + d, color);
        }
    }
    canvas.text(x - 70, y, &label(hi), 2, AXIS);
    canvas.text(x - 70, y + h - 10, &label(lo), 2, AXIS);
    canvas.text(x, y + h + 6, &format!("{}", s0 as u64), 2, AXIS);
    let end = format!("step {}", s1 as u64);
    canvas.text(x + w - end.len() as i64 * 8, y + h + 6, &end, 2, AXIS);
}

/// A PNG (800 x 600) with the training loss (top) and the validation GAP (bottom)
/// against the step. Either series may be empty.
pub fn training_curves_png(loss: &[(u64, f64)], gap: &[(u64, f64)]) -> Vec<u8> {
    let canvas = render(loss, gap);
    encode_png(canvas.width as u32, canvas.height as u32, &canvas.rgb)
}

const LOSS_COLOR: [u8; 3] = [31, 119, 180];
const GAP_COLOR: [u8; 3] = [214, 39, 40];

fn render(loss: &[(u64, f64)], gap: &[(u64, f64)]) -> Canvas {
    let mut canvas = Canvas::new(800, 600);
    panel(&mut canvas, (90, 40, 680, 210), "train loss", loss, LOSS_COLOR);
    panel(&mut canvas, (90, 340, 680, 210), "validation gap", gap, GAP_COLOR);
    canvas
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pixels(canvas: &Canvas, color: [u8; 3], rows: std::ops::Range<usize>) -> usize {
        canvas
            .rgb
            .chunks(3)
            .enumerate()
            .filter(|(i, p)| *p == color && rows.contains(&(i / canvas.width)))
            .count()
    }

    #[test]
    fn curves_are_drawn_in_their_panels() {
        let loss: Vec<(u64, f64)> = (0..50).map(|s| (s, 1.0 / (1.0 + s as f64))).collect();
        let canvas = render(&loss, &[(10, 0.2), (20, 0.5)]);
        assert!(pixels(&canvas, LOSS_COLOR, 40..251) > 600, "loss curve spans the panel");
        assert_eq!(pixels(&canvas, LOSS_COLOR, 300..600), 0);
        assert!(pixels(&canvas, GAP_COLOR, 340..551) > 600);
        // Non-finite points are skipped, an empty series draws only axes.
        let canvas = render(&[(0, f64::NAN)], &[]);
        assert_eq!(pixels(&canvas, LOSS_COLOR, 0..600), 0);
    }
}
