use serde::{Deserialize, Serialize};

#[dsss::shared_object]
#[derive(Default, Serialize, Deserialize)]
pub struct Lobby {
    seats: Vec<String>,
}

pub struct Seat(pub usize);

#[dsss::methods]
impl Lobby {
    #[mutate(id = 1)]
    pub fn join(&mut self, player: String) -> Seat {
        self.seats.push(player);
        Seat(self.seats.len())
    }
}

fn main() {}
