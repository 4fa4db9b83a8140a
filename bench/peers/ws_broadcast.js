'use strict';
/*
 * The classic `ws` broadcast server, as a peer for bench/run: every
 * message a client sends is relayed, with its opcode, to every open
 * client (the sender included, like chatfanoutd). No rooms: each
 * benchmark run uses a fresh server or a single room anyway.
 *
 * usage: node ws_broadcast.js [PORT]   (binds 127.0.0.1; 0 = any port)
 * prints "listening port=P" on stdout once ready.
 */
const { WebSocketServer, WebSocket } = require('ws');

const port = Number(process.argv[2] || 0);
const wss = new WebSocketServer({ host: '127.0.0.1', port });

wss.on('connection', (ws) => {
  ws.on('error', () => {});
  ws.on('message', (data, isBinary) => {
    wss.clients.forEach((client) => {
      if (client.readyState === WebSocket.OPEN) {
        client.send(data, { binary: isBinary });
      }
    });
  });
});

wss.on('listening', () => {
  console.log('listening port=' + wss.address().port);
});

process.on('SIGTERM', () => process.exit(0));
process.on('SIGINT', () => process.exit(0));
