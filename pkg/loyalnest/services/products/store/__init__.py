"""Where Products keeps its state, in PostgreSQL (schema `products`): the catalogue
(`catalogue`), sales and product RFM with its Redis cache (`sales`), and the campaigns
Campaign announced (`campaigns`)."""
