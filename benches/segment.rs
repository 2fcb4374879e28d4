//! Segment attach time and registration rate.

use criterion::{criterion_group, criterion_main, Criterion};
use shmds::Segment;

fn segment(c: &mut Criterion) {
    let name = format!("shmds-bench-seg-{}", std::process::id());
    let seg = Segment::create(&name, 64 << 20).unwrap();
    for i in 0..32 {
        seg.create_array::<u64>(&format!("a{i}"), 16).unwrap();
    }
    c.bench_function("segment/attach (open + map + validate + unmap)", |b| {
        b.iter(|| Segment::open(&name).unwrap())
    });
    c.bench_function("segment/open_array by name (32 entries)", |b| {
        b.iter(|| seg.open_array::<u64>("a31").unwrap())
    });
    let mut n = 0u64;
    c.bench_function("segment/create + erase an entry", |b| {
        b.iter(|| {
            n += 1;
            let name = format!("r{}", n % 1000);
            seg.create_array::<u64>(&name, 1).unwrap();
            seg.erase(&name).unwrap();
        })
    });
    drop(seg);
    Segment::remove(&name).unwrap();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(30).measurement_time(std::time::Duration::from_secs(2));
    targets = segment
}
criterion_main!(benches);
