pub mod imitation_hub;
