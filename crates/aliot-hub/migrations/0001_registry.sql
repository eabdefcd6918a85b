-- The hub's registry on PostgreSQL: products, devices, device tokens, saved clean-session-0
-- sessions and their QoS 1 messages. Applied once, in a transaction, by `registry/pg/migrate.rs`.

CREATE TABLE products (
    product_key          text    PRIMARY KEY,
    name                 text    NOT NULL,
    product_secret       text    NOT NULL,
    created_ms           bigint  NOT NULL,
    dynamic_registration boolean NOT NULL DEFAULT false,
    node_type            text    NOT NULL DEFAULT 'direct'
);

CREATE TABLE devices (
    product_key    text    NOT NULL REFERENCES products (product_key),
    device_name    text    NOT NULL,
    device_secret  text    NOT NULL,
    iot_id         text    NOT NULL,
    enabled        boolean NOT NULL DEFAULT true,
    created_ms     bigint  NOT NULL,
    last_online_ms bigint,
    last_ip        text,
    -- 'register' or 'regnwl': how the device last registered itself (NULL: by the admin API).
    enrolment      text,
    PRIMARY KEY (product_key, device_name)
);

CREATE TABLE device_tokens (
    product_key  text NOT NULL,
    device_name  text NOT NULL,
    device_token text NOT NULL,
    PRIMARY KEY (product_key, device_name),
    FOREIGN KEY (product_key, device_name) REFERENCES devices (product_key, device_name) ON DELETE CASCADE
);

CREATE TABLE sessions (
    product_key    text    NOT NULL,
    device_name    text    NOT NULL,
    -- JSON: [[filter, qos], ...]
    subscriptions  text    NOT NULL,
    auto_subscribe boolean NOT NULL,
    PRIMARY KEY (product_key, device_name)
);

CREATE TABLE session_messages (
    product_key text   NOT NULL,
    device_name text   NOT NULL,
    id          bigint NOT NULL,
    topic       text   NOT NULL,
    payload     bytea  NOT NULL,
    queued_ms   bigint NOT NULL,
    PRIMARY KEY (product_key, device_name, id)
);
