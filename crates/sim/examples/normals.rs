//! Throughput of the normal generator alone (one thread): `cargo run --release --example normals`.
fn main() {
    let mut g = kappa_sim::normal::NormalStream::new(1);
    let mut buf = vec![0.0; 1000];
    let n = 200_000;
    let t = std::time::Instant::now();
    let mut acc = 0.0;
    for _ in 0..n {
        g.fill(&mut buf);
        acc += buf[7];
    }
    let secs = t.elapsed().as_secs_f64();
    println!("{:.2} ns per normal ({acc:.3})", secs * 1e9 / (n as f64 * 1000.0));
}
