use serde::{Deserialize, Serialize};

#[dsss::shared_object]
#[derive(Default, Serialize, Deserialize)]
pub struct Lobby {
    seats: Vec<String>,
}

#[dsss::methods]
impl Lobby {
    #[mutate]
    pub fn join(&mut self, player: String) {
        self.seats.push(player);
    }

    #[mutate(codec = "json")]
    pub fn leave(&mut self, player: String) {
        self.seats.retain(|seat| *seat != player);
    }
}

fn main() {}
