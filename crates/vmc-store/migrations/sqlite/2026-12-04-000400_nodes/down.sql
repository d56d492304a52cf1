DROP TABLE leases;
DROP TABLE nodes;
