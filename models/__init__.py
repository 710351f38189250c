"""Work orders and their lifecycle (工单与闭环): shared records (`records`), the state machine
(`lifecycle`), the working-day calendar (`calendar`), the lifecycle policy (`policy`), SQLModel
tables (`tables`) and the store (`store`)."""
