use serde::{Deserialize, Serialize};

#[dsss::shared_object]
#[derive(Default, Serialize, Deserialize)]
pub struct Lobby {
    seats: Vec<String>,
}

#[dsss::methods(retire = [2])]
impl Lobby {
    #[mutate(id = 1, codec = "json", stable = true)]
    pub fn join(&mut self, player: String) {
        self.seats.push(player);
    }
}

fn main() {}
