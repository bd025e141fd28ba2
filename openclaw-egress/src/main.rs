#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = openclaw_egress::cli::parse();
    match openclaw_egress::commands::run(cli).await {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
