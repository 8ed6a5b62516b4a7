//! What the example programs share: `--topology FILE --region ID` on the command line, and a
//! client of that region.

/// The usage line of every example program.
pub const USAGE: &str = "usage: <example> --region ID [--topology FILE]\n  \
    --region ID      the region this instance runs in, for example local-a\n  \
    --topology FILE  the cluster's topology (default: dsss-up/local.toml, written by `dsss up`)";

/// A client of the region the command line names, or a message that says what is wrong.
pub async fn client_from_arguments(
    arguments: impl IntoIterator<Item = String>,
) -> Result<dsss::Client, String> {
    let mut topology_path = String::from("dsss-up/local.toml");
    let mut region = None;
    let mut arguments = arguments.into_iter();
    while let Some(argument) = arguments.next() {
        match argument.as_str() {
            "--topology" => {
                topology_path = arguments
                    .next()
                    .ok_or_else(|| format!("--topology needs a file\n{USAGE}"))?;
            }
            "--region" => {
                region = Some(
                    arguments
                        .next()
                        .ok_or_else(|| format!("--region needs a region id\n{USAGE}"))?,
                );
            }
            "--help" | "-h" => return Err(USAGE.to_owned()),
            other => return Err(format!("unknown argument {other:?}\n{USAGE}")),
        }
    }
    let region = region.ok_or_else(|| format!("--region is required\n{USAGE}"))?;
    let config = dsss::Config::from_topology(&topology_path, &region)?;
    dsss::Client::connect(config)
        .await
        .map_err(|error| error.to_string())
}

/// Runs an example's body on a tokio runtime, printing its error and exiting with 1 on failure.
pub fn run_example<F, Fut>(body: F) -> std::process::ExitCode
where
    F: FnOnce(dsss::Client) -> Fut,
    Fut: std::future::Future<Output = Result<(), String>>,
{
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("cannot start the async runtime: {error}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let outcome = runtime.block_on(async {
        let client = client_from_arguments(std::env::args().skip(1)).await?;
        body(client).await
    });
    match outcome {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("{message}");
            std::process::ExitCode::FAILURE
        }
    }
}
