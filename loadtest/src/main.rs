fn main() { eprintln!("loadtest: not built yet; see issue 5"); std::process::exit(2); }
