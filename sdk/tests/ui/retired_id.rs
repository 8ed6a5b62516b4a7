use serde::{Deserialize, Serialize};

#[dsss::shared_object]
#[derive(Default, Serialize, Deserialize)]
pub struct Lobby {
    seats: Vec<String>,
}

#[dsss::methods(retired = [2, 3])]
impl Lobby {
    #[mutate(id = 1)]
    pub fn join(&mut self, player: String) {
        self.seats.push(player);
    }

    #[mutate(id = 3)]
    pub fn leave(&mut self, player: String) {
        self.seats.retain(|seat| *seat != player);
    }
}

fn main() {}
