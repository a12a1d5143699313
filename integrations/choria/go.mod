module provtarget.example.net/integrations/choria

go 1.19
