//! The README's Rust example, run by `make test`: `readme_example.in` is
//! generated from README.md, and a test (`shmds/tests/format.rs`) fails
//! when it is stale.
#![allow(unused_variables)]

fn example() -> Result<(), Box<dyn std::error::Error>> {
    include!("readme_example.in")
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let result = example();
    let _ = shmds::Segment::remove("shmds-readme-check");
    result
}
