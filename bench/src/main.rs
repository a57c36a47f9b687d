//! `bench`: the one command that measures Ferry next to what users would
//! otherwise run. See `docs/benchmarks.md` and `--help`.

use clap::Parser;

fn main() {
    let opts = ferry_bench::opts::Opts::parse();
    if let Err(e) = ferry_bench::run::run(opts) {
        eprintln!("bench: {e:#}");
        std::process::exit(1);
    }
}
