//! `spout`: the default server on smol (being written).

fn main() {
    eprintln!("spout: server not built yet");
    std::process::exit(2);
}
