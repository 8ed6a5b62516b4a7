use serde::{Deserialize, Serialize};

#[dsss::shared_object]
#[derive(Default, Serialize, Deserialize)]
pub struct Lobby {
    seats: Vec<String>,
}

pub trait Join {
    fn join(&mut self, player: String);
}

#[dsss::methods]
impl Join for Lobby {
    #[mutate(id = 1)]
    fn join(&mut self, player: String) {
        self.seats.push(player);
    }
}

fn main() {}
