import FastCGI

FastCGIServer.run { HelloHandler() }
