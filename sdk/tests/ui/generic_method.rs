use serde::{Deserialize, Serialize};

#[dsss::shared_object]
#[derive(Default, Serialize, Deserialize)]
pub struct Lobby {
    seats: Vec<String>,
}

#[dsss::methods]
impl Lobby {
    #[mutate(id = 1)]
    pub fn join<P: Into<String>>(&mut self, player: P) {
        self.seats.push(player.into());
    }

    #[mutate(id = 2)]
    pub fn leave(&mut self, player: impl Into<String>) {
        let player = player.into();
        self.seats.retain(|seat| *seat != player);
    }
}

fn main() {}
