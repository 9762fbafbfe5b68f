//! An example shard: an in-memory key-value store that takes part in
//! ringleader's plans with a [`Runner`](ringleader_client::Runner).
//!
//! ```text
//! cargo run -p ringleader-client --example shard -- \
//!     --coordinator http://127.0.0.1:8080 --member db-3 --listen 127.0.0.1:9003 \
//!     --token-file token --peer-port 9000
//! ```
//!
//! It serves `GET /range?start=S&end=E` (the entries whose key hashes into
//! `(S, E]`), `GET /keys` and `GET /healthz`; with `--seed N` it first fills
//! itself with the keys `key-0` … `key-{N-1}` that the committed ring gives
//! it. Then it follows its work: each ready move is "streamed" by asking
//! the source shard's `/range` over HTTP, stored, and reported done. See
//! `shard.rs` for the flags.

mod shard;

#[tokio::main]
async fn main() {
    let config = match shard::Config::from_args(std::env::args().skip(1)) {
        Ok(config) => config,
        Err(message) => {
            eprintln!("shard: {message}\n\n{}", shard::USAGE);
            std::process::exit(2);
        }
    };
    if let Err(error) = shard::run(config, std::future::pending()).await {
        eprintln!("shard: {error}");
        std::process::exit(1);
    }
}
