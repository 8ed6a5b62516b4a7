use serde::{Deserialize, Serialize};

#[dsss::shared_object]
#[derive(Default, Serialize, Deserialize)]
pub struct Lobby {
    seats: Vec<String>,
}

#[dsss::methods]
impl Lobby {
    #[mutate(id = 1)]
    pub fn sync(&mut self, seats: Vec<String>) {
        self.seats = seats;
    }
}

fn main() {}
