//! The demo as an example: CLIP-HandID end to end on synthetic hands, no download needed.
//!
//! ```text
//! cargo run --release --example quickstart
//! ```
//! The same library call as `handid demo` ([`handid::demo::run_demo`]) with the same arguments;
//! the last line printed is JSON: `{"rank1": .., "map": .., "rank1_untrained": .., "seconds": ..}`.

use std::process::ExitCode;

use clap::Parser;
use clip_handid::args::DemoArgs;
use clip_handid::terminal::Terminal;

/// CLIP-HandID on synthetic hands.
#[derive(Parser, Debug)]
struct Args {
    #[command(flatten)]
    demo: DemoArgs,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let options = args.demo.options();
    let result = args.demo.backend.ensure_compiled().and_then(|backend| {
        clip_handid::with_backend!(backend, |B, device| {
            clip_handid::handid::demo::run_demo::<B>(&options, &device, &mut Terminal::new(false))
        })?
    });
    match result {
        Ok(summary) => {
            println!("{}", summary.table());
            println!("{}", summary.json());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
