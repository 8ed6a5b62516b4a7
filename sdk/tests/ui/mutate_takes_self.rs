use serde::{Deserialize, Serialize};

#[dsss::shared_object]
#[derive(Default, Serialize, Deserialize)]
pub struct Lobby {
    seats: Vec<String>,
}

#[dsss::methods]
impl Lobby {
    #[mutate(id = 1)]
    pub fn count(&self) -> usize {
        self.seats.len()
    }

    #[mutate(id = 2)]
    pub fn into_seats(self) -> Vec<String> {
        self.seats
    }

    #[mutate(id = 3)]
    pub fn empty() -> Lobby {
        Lobby::default()
    }
}

fn main() {}
