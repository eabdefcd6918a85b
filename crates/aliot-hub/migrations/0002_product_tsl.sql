-- Each product's thing model (TSL), as imported.
CREATE TABLE product_tsl (
    product_key text PRIMARY KEY REFERENCES products (product_key),
    json        text NOT NULL
);
