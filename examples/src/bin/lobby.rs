//! Seats two players of this region in the shared game lobby, frees one seat, and shows who sits
//! where.

use dsss_examples::connect::run_example;
use dsss_examples::{Lobby, LobbyError};

fn main() -> std::process::ExitCode {
    run_example(|client| async move {
        let lobby = client
            .open::<Lobby>("examples/lobby")
            .await
            .map_err(|error| error.to_string())?;
        if lobby.read(|lobby| lobby.capacity()) == 0 {
            match lobby
                .set_capacity(6)
                .await
                .map_err(|error| error.to_string())?
            {
                Ok(()) => println!("the lobby has 6 seats"),
                Err(refused) => println!("setting the capacity was refused: {refused}"),
            }
        }
        let region = client.region().to_owned();
        for player in [format!("{region}-ann"), format!("{region}-bob")] {
            match lobby
                .join(player.clone())
                .await
                .map_err(|error| error.to_string())?
            {
                Ok(seat) => println!("{player} sits in seat {seat}"),
                Err(LobbyError::AlreadySeated { seat, .. }) => {
                    println!("{player} sits in seat {seat} already");
                }
                Err(refused) => println!("{player} was refused: {refused}"),
            }
        }
        let left = lobby
            .leave(format!("{region}-bob"))
            .await
            .map_err(|error| error.to_string())?;
        println!("{region}-bob left: {left}");
        lobby.sync().await.map_err(|error| error.to_string())?;
        println!(
            "free seats after sync(): {}",
            lobby.read(|lobby| lobby.free_seats())
        );
        Ok(())
    })
}
