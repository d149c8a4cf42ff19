-- Run once by the postgres image on an empty data volume (docker-entrypoint-initdb.d), as
-- POSTGRES_USER (vafa), who therefore owns them: one database per service, as in production.
-- Each service's `migrate` one-shot then creates its tables.
CREATE DATABASE vafa_profile;
CREATE DATABASE vafa_loyalty;
CREATE DATABASE vafa_segmentation;
CREATE DATABASE vafa_messaging;
CREATE DATABASE vafa_ticketing;
CREATE DATABASE vafa_inventory;
