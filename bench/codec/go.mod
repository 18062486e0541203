module github.com/x0a1b/promptmq/bench/codec

go 1.26.0

require (
	github.com/eclipse/paho.golang v0.23.0
	github.com/mochi-mqtt/server/v2 v2.7.9
	github.com/x0a1b/promptmq v0.0.0
)

require (
	github.com/gorilla/websocket v1.5.3 // indirect
	github.com/rs/xid v1.4.0 // indirect
)

replace github.com/x0a1b/promptmq => ../..
