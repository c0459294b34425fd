//! What the capability benches share: same-run, alternating throughput
//! rounds of a native baseline and the guest.

use std::time::Instant;

/// Runs `calls` calls of `f` from `concurrency` tasks; returns calls/s.
pub async fn throughput<F, Fut>(calls: usize, concurrency: usize, f: F) -> f64
where
    F: Fn(usize) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = ()> + Send,
{
    let start = Instant::now();
    let tasks: Vec<_> = (0..concurrency)
        .map(|t| {
            let f = f.clone();
            tokio::spawn(async move {
                for i in 0..calls / concurrency {
                    f(t * calls + i).await;
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    calls as f64 / start.elapsed().as_secs_f64()
}

/// Alternates native and guest runs so drift on a shared machine hits both;
/// returns the medians of native, guest and of the per-round ratios.
pub async fn rounds<N, NF, G, GF>(
    rounds: usize,
    calls: usize,
    concurrency: usize,
    native: N,
    guest: G,
) -> (f64, f64, f64)
where
    N: Fn(usize) -> NF + Clone + Send + 'static,
    NF: Future<Output = ()> + Send,
    G: Fn(usize) -> GF + Clone + Send + 'static,
    GF: Future<Output = ()> + Send,
{
    let (mut ns, mut gs, mut rs) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..rounds {
        let n = throughput(calls, concurrency, native.clone()).await;
        let g = throughput(calls, concurrency, guest.clone()).await;
        ns.push(n);
        gs.push(g);
        rs.push(g / n);
    }
    (median(ns), median(gs), median(rs))
}

pub fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}
