DROP TABLE resource_samples;
