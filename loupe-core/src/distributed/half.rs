//! IEEE 754 half precision (binary16) as the wire format of compressed gradient
//! all-reduces ([`super::Compression::Fp16`]): 1 sign bit, 5 exponent bits (bias 15),
//! 10 mantissa bits. dfdx builds without its `f16` feature here, so the conversions
//! are written out: round to nearest, ties to even; subnormals kept; values beyond the
//! largest half (65504, after rounding) become infinities; NaN stays NaN.

/// The half nearest to `x` (ties to even), as its bit pattern.
pub fn f32_to_f16(x: f32) -> u16 {
    let bits = x.to_bits();
    let sign = ((bits >> 16) & 0x8000) as u16;
    let exponent = ((bits >> 23) & 0xff) as i32;
    let mantissa = bits & 0x007f_ffff;
    if exponent == 0xff {
        // Infinity, or NaN made quiet (so that a payload in the low bits alone survives).
        let nan = if mantissa != 0 { 0x0200 | (mantissa >> 13) as u16 } else { 0 };
        return sign | 0x7c00 | nan;
    }
    // The half's biased exponent for a normal result.
    let e = exponent - 127 + 15;
    if e >= 0x1f {
        return sign | 0x7c00;
    }
    if e <= 0 {
        // A half subnormal (h x 2^-24) or zero: x = m x 2^(exponent - 150) with the
        // implicit bit in m, so h = m / 2^(14 - e). Below 2^-25 everything rounds to 0.
        if e < -10 {
            return sign;
        }
        let m = mantissa | 0x0080_0000;
        let shift = (14 - e) as u32;
        let h = round_shifted(m, shift);
        // A carry into bit 10 is the smallest normal half, which the bits already encode.
        return sign | h as u16;
    }
    let h = ((e as u32) << 10) | (mantissa >> 13);
    // A carry out of the mantissa bumps the exponent, up to infinity (0x7c00): correct.
    let rounded = h + round_up(mantissa & 0x1fff, 13, h);
    sign | rounded as u16
}

/// `m >> shift` rounded to nearest, ties to even.
fn round_shifted(m: u32, shift: u32) -> u32 {
    let h = m >> shift;
    h + round_up(m & ((1 << shift) - 1), shift, h)
}

/// 1 when the `shift` bits dropped (`rest`) round the kept value `kept` up.
fn round_up(rest: u32, shift: u32, kept: u32) -> u32 {
    let halfway = 1 << (shift - 1);
    u32::from(rest > halfway || (rest == halfway && kept & 1 == 1))
}

/// The value of the half with bit pattern `h` (exact: every half is an `f32`).
pub fn f16_to_f32(h: u16) -> f32 {
    let sign = u32::from(h & 0x8000) << 16;
    let exponent = u32::from((h >> 10) & 0x1f);
    let mantissa = u32::from(h & 0x03ff);
    let magnitude = match exponent {
        0 => return f32::from_bits(sign) + sign_of(sign) * mantissa as f32 * SUBNORMAL_UNIT,
        0x1f => 0x7f80_0000 | (mantissa << 13),
        _ => ((exponent + 127 - 15) << 23) | (mantissa << 13),
    };
    f32::from_bits(sign | magnitude)
}

/// 2^-24, the smallest positive half.
const SUBNORMAL_UNIT: f32 = 1.0 / 16_777_216.0;

fn sign_of(sign: u32) -> f32 {
    if sign == 0 {
        1.0
    } else {
        -1.0
    }
}

/// `values` as halves, appended to `out`.
pub fn encode(values: &[f32], out: &mut Vec<u16>) {
    out.extend(values.iter().map(|&v| f32_to_f16(v)));
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn known_bit_patterns() {
        let cases: [(f32, u16); 22] = [
            (0.0, 0x0000),
            (-0.0, 0x8000),
            (1.0, 0x3c00),
            (-2.0, 0xc000),
            (0.5, 0x3800),
            (0.1, 0x2e66),
            (1.0 / 3.0, 0x3555),
            (65504.0, 0x7bff),
            // Halfway between 65504 and the next step (65536, not representable): even is up.
            (65520.0, 0x7c00),
            (65519.0, 0x7bff),
            (1e6, 0x7c00),
            (f32::INFINITY, 0x7c00),
            (f32::NEG_INFINITY, 0xfc00),
            // Smallest normal, largest subnormal, smallest subnormal.
            (6.103_515_6e-5, 0x0400),
            (1023.0 / 16_777_216.0, 0x03ff),
            (1.0 / 16_777_216.0, 0x0001),
            // 2^-25 is halfway between 0 and 2^-24: ties to even (0). 1.5 x 2^-25 rounds up.
            (1.0 / 33_554_432.0, 0x0000),
            (1.5 / 33_554_432.0, 0x0001),
            (1e-10, 0x0000),
            // 1 + 2^-11 is halfway between 1 and 1 + 2^-10: to even (1). 1 + 3 x 2^-11: up.
            (1.0 + 1.0 / 2048.0, 0x3c00),
            (1.0 + 3.0 / 2048.0, 0x3c02),
            (1.0 + 1.0 / 2048.0 + 1.0 / 1_048_576.0, 0x3c01),
        ];
        for (x, bits) in cases {
            assert_eq!(f32_to_f16(x), bits, "{x:e} -> {:#06x}, expected {bits:#06x}", f32_to_f16(x));
        }
        // A subnormal that rounds up into the smallest normal.
        assert_eq!(f32_to_f16(1023.6 / 16_777_216.0), 0x0400);
    }

    #[test]
    fn nan_stays_nan() {
        assert_eq!(f32_to_f16(f32::NAN) & 0x7e00, 0x7e00);
        assert!(f16_to_f32(f32_to_f16(f32::NAN)).is_nan());
        assert!(f16_to_f32(f32_to_f16(-f32::NAN)).is_nan());
        // A NaN with only low payload bits must not turn into infinity.
        assert!(f16_to_f32(f32_to_f16(f32::from_bits(0x7f80_0001))).is_nan());
        assert!(f16_to_f32(0x7c01).is_nan());
    }

    #[test]
    fn decodes_known_bit_patterns() {
        assert_eq!(f16_to_f32(0x3c00), 1.0);
        assert_eq!(f16_to_f32(0xc000), -2.0);
        assert_eq!(f16_to_f32(0x7bff), 65504.0);
        assert_eq!(f16_to_f32(0x0001), 1.0 / 16_777_216.0);
        assert_eq!(f16_to_f32(0x8001), -1.0 / 16_777_216.0);
        assert_eq!(f16_to_f32(0x03ff), 1023.0 / 16_777_216.0);
        assert_eq!(f16_to_f32(0x0400), 1.0 / 16384.0);
        assert_eq!(f16_to_f32(0x7c00), f32::INFINITY);
        assert_eq!(f16_to_f32(0xfc00), f32::NEG_INFINITY);
        assert_eq!(f16_to_f32(0x8000).to_bits(), (-0.0f32).to_bits());
    }

    #[test]
    fn every_half_round_trips() {
        for h in 0..=u16::MAX {
            let x = f16_to_f32(h);
            if x.is_nan() {
                assert!(f16_to_f32(f32_to_f16(x)).is_nan(), "{h:#06x}");
            } else {
                assert_eq!(f32_to_f16(x), h, "{h:#06x} -> {x:e}");
            }
        }
    }

    proptest! {
        /// The result is the nearest half: no neighbour of it is closer to `x`.
        #[test]
        fn rounds_to_the_nearest_half(x in -70000.0f32..70000.0, scale in -30i32..1) {
            let x = x * 2f32.powi(scale);
            let h = f32_to_f16(x);
            let error = |bits: u16| (f64::from(x) - f64::from(f16_to_f32(bits))).abs();
            if f16_to_f32(h).is_finite() {
                let (below, above) = (h.wrapping_sub(1), h.wrapping_add(1));
                for n in [below, above] {
                    let v = f16_to_f32(n);
                    if v.is_finite() && (n & 0x7fff) != 0x7fff {
                        prop_assert!(error(h) <= error(n), "{x:e}: {h:#06x} but {n:#06x} is closer");
                    }
                }
            } else {
                // Infinity only from at least halfway past the largest half.
                prop_assert!(x.abs() >= 65520.0, "{x:e} became {h:#06x}");
            }
        }
    }
}
