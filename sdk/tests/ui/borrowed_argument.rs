use serde::{Deserialize, Serialize};

#[dsss::shared_object]
#[derive(Default, Serialize, Deserialize)]
pub struct Lobby {
    seats: Vec<String>,
}

#[dsss::methods]
impl Lobby {
    #[mutate(id = 1)]
    pub fn join(&mut self, player: &str) {
        self.seats.push(player.to_string());
    }
}

fn main() {}
