"""The simulated lender: the engine, its response rules, the policy replay, and the only reader of the hidden truth/."""
