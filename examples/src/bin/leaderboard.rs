//! Records scores in this region's own leaderboard (a regional object: other regions never see
//! it) and shows the top of the board.

use dsss_examples::Leaderboard;
use dsss_examples::connect::run_example;

fn main() -> std::process::ExitCode {
    run_example(|client| async move {
        let board = client
            .open_regional::<Leaderboard>("examples/leaderboard")
            .await
            .map_err(|error| error.to_string())?;
        let region = client.region().to_owned();
        for (player, score) in [("ann", 30), ("bob", 50), ("cyd", 40)] {
            let name = format!("{region}-{player}");
            let rank = board
                .record(name.clone(), score)
                .await
                .map_err(|error| error.to_string())?;
            println!("{name} scored {score}: rank {rank:?}");
        }
        for (rank, (name, score)) in board.read(|board| board.top(3)).into_iter().enumerate() {
            println!("  {}. {name:<16} {score}", rank + 1);
        }
        Ok(())
    })
}
