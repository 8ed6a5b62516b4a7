use serde::{Deserialize, Serialize};

#[dsss::shared_object]
#[derive(Serialize, Deserialize)]
pub struct Lobby {
    seats: Vec<String>,
}

#[dsss::methods]
impl Lobby {
    #[mutate(id = 1)]
    pub fn join(&mut self, player: String) {
        self.seats.push(player);
    }
}

fn main() {}
