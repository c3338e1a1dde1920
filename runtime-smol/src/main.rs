//! `spout`: the default server on smol (being written).

#[allow(dead_code)]
mod clock;
#[allow(dead_code)]
mod http;
#[allow(dead_code)]
mod process;

fn main() {
    eprintln!("spout: server not built yet");
    std::process::exit(2);
}
