use serde::{Deserialize, Serialize};

#[dsss::shared_object]
#[derive(Default, Serialize, Deserialize)]
pub struct Lobby {
    seats: Vec<String>,
}

pub struct Player {
    pub name: String,
}

#[dsss::methods]
impl Lobby {
    #[mutate(id = 1)]
    pub fn join(&mut self, player: Player) {
        self.seats.push(player.name);
    }
}

fn main() {}
