//! `ringleader`: the coordinator binary and its operator CLI.
//!
//! `ringleader serve` runs the coordinator; `ringleader simulate` runs
//! offline scenarios of joins and leaves against the ring and planner.

use ringleader::simulate;

use clap::{Args, Parser, Subcommand};
use ringleader_ring::{Replication, RingConfig, Strategy};

/// A consistent-hash ring coordinator for stateful services on Kubernetes.
#[derive(Parser, Debug)]
#[command(name = "ringleader", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Simulate joins and leaves offline and print balance and data movement
    /// for each step.
    ///
    /// Example: `ringleader simulate --members 10 --tokens 16 +3 -1 +10`
    /// (ten members, then three join, one leaves, ten join). `--churn 500`
    /// appends 500 random steps.
    Simulate(SimulateArgs),
}

#[derive(Args, Debug)]
struct SimulateArgs {
    /// Members at the start.
    #[arg(long, default_value_t = 10)]
    members: usize,
    /// Tokens per member.
    #[arg(long, default_value_t = 16)]
    tokens: u32,
    /// Token allocation: balanced or hashed.
    #[arg(long, default_value = "balanced", value_parser = simulate::parse_strategy)]
    strategy: Strategy,
    /// Replication factor used for the plans.
    #[arg(long, default_value_t = 1)]
    rf: usize,
    /// Spread members over this many zones and replicate zone-aware.
    #[arg(long, default_value_t = 0)]
    zones: usize,
    /// Append this many random steps (one or two joins and/or leaves).
    #[arg(long, default_value_t = 0)]
    churn: usize,
    /// Seed for who leaves and for the churn.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Print only the worst balance and moved/ideal over all steps.
    #[arg(long)]
    summary: bool,
    /// Output format: table or json.
    #[arg(long, default_value = "table")]
    output: String,
    /// Steps: +N (N join), -N (N leave), +N-M (both at once).
    #[arg(allow_hyphen_values = true)]
    steps: Vec<simulate::Step>,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Simulate(args) => run_simulate(args),
    }
}

fn run_simulate(args: SimulateArgs) -> anyhow::Result<()> {
    let mut steps = args.steps;
    if args.churn > 0 {
        let start = args.members as i64
            + steps
                .iter()
                .map(|s| s.join as i64 - s.leave as i64)
                .sum::<i64>();
        let start = start.max(0) as usize;
        let min = (args.members / 2).max(args.rf).max(3);
        let max = args.members * 2 + 3;
        steps.extend(simulate::churn(args.churn, start, min, max, args.seed));
    }
    let scenario = simulate::Scenario {
        members: args.members,
        config: RingConfig::new(args.strategy, args.tokens),
        replication: Replication::new(args.rf, args.zones > 1),
        zones: args.zones,
        steps,
        seed: args.seed,
    };
    let reports = simulate::run(&scenario)?;
    let (balance, ratio) = simulate::worst(&reports);
    match (args.output.as_str(), args.summary) {
        ("json", _) => println!("{}", serde_json::to_string_pretty(&reports)?),
        ("table", false) => {
            print!("{}", simulate::table(&reports));
            println!("worst max/mean {balance:.4}, worst moved/ideal {ratio:.3}");
        }
        ("table", true) => println!(
            "members={} tokens={} strategy={} rf={} steps={}: start max/mean {:.4}, worst max/mean {balance:.4}, worst moved/ideal {ratio:.3}",
            args.members,
            args.tokens,
            args.strategy,
            args.rf,
            reports.len() - 1,
            reports[0].balance
        ),
        (other, _) => anyhow::bail!("unknown output format {other:?}: use table or json"),
    }
    Ok(())
}
