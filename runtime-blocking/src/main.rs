//! `spout-blocking`: the same server on tiny_http and std threads (being written).

fn main() {
    eprintln!("spout-blocking: server not built yet");
    std::process::exit(2);
}
