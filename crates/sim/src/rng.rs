//! Random streams. Every stream derives only from a trial's id, its seed and a stream index (a
//! fixed block of paths), so results are bit-identical whatever the thread count or machine.

use kappa_core::TrialId;
use rand::SeedableRng;
use rand_xoshiro::Xoshiro256PlusPlus;

/// The random streams of one block of paths: fast normals, plus a scalar generator for the
/// other distributions (Student-t).
#[derive(Clone, Debug)]
pub struct StreamRng {
    /// Standard normals.
    pub normal: crate::normal::NormalStream,
    /// Everything else.
    pub scalar: Xoshiro256PlusPlus,
}

/// SplitMix64 finaliser: a bijective mixer of 64-bit words.
pub fn mix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The generator of stream `stream` of the trial (`id`, `seed`).
pub fn stream(id: TrialId, seed: u64, stream: u64) -> StreamRng {
    let key = mix64(id.0 ^ mix64(seed ^ mix64(stream.wrapping_add(0x006b_6170_7061))));
    StreamRng { normal: crate::normal::NormalStream::new(key), scalar: Xoshiro256PlusPlus::seed_from_u64(mix64(key)) }
}
